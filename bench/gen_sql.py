"""Writes the SQL script of the sqlite workload to stdout.

    python3 gen_sql.py [ROWS]      (default 80000 orders + 8000 customers)

The script builds an in-memory database the way an application would: a
table of customers and one of orders filled by individual INSERT statements
(each parsed and prepared separately, which is where sqlite allocates most),
indexes, then aggregate, join, sort, LIKE, update and delete queries whose
results are printed.  A fixed seed makes the script, and so its output,
identical on every run.
"""
import random
import sys

WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod "
         "tempor incididunt ut labore et dolore magna aliqua enim ad minim veniam "
         "quis nostrud exercitation ullamco laboris nisi aliquip ex ea commodo").split()
CITIES = ["Aachen", "Bergen", "Cork", "Dijon", "Essen", "Faro", "Graz", "Hull",
          "Ieper", "Jena", "Kiel", "Lund", "Metz", "Nice", "Oslo", "Pisa"]


def main():
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 80000
    rng = random.Random(2024)
    out = sys.stdout
    w = out.write
    w("PRAGMA journal_mode=OFF;\n")
    w("CREATE TABLE customer(id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT, note TEXT);\n")
    w("CREATE TABLE orders(id INTEGER PRIMARY KEY, customer INTEGER, item TEXT, qty INTEGER, price REAL, comment TEXT);\n")
    customers = max(rows // 10, 1)
    w("BEGIN;\n")
    for i in range(1, customers + 1):
        name = "%s %s" % (rng.choice(WORDS).title(), rng.choice(WORDS).title())
        note = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 20)))
        w("INSERT INTO customer VALUES(%d,'%s','%s','%s');\n" % (i, name, rng.choice(CITIES), note))
    for i in range(1, rows + 1):
        comment = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(2, 25)))
        w("INSERT INTO orders(customer,item,qty,price,comment) VALUES(%d,'%s-%d',%d,%.2f,'%s');\n"
          % (rng.randrange(1, customers + 1), rng.choice(WORDS), rng.randrange(500),
             rng.randrange(1, 20), rng.random() * 200, comment))
    w("COMMIT;\n")
    w("CREATE INDEX orders_customer ON orders(customer);\n")
    w("CREATE INDEX orders_item ON orders(item);\n")
    w("CREATE INDEX customer_city ON customer(city, name);\n")
    w("SELECT count(*), sum(qty), round(sum(qty*price),2) FROM orders;\n")
    w("SELECT c.city, count(*), round(sum(o.qty*o.price),2) FROM orders o JOIN customer c "
      "ON c.id=o.customer GROUP BY c.city ORDER BY c.city;\n")
    w("SELECT item, count(*) AS n FROM orders GROUP BY item ORDER BY n DESC, item LIMIT 10;\n")
    w("SELECT count(*) FROM orders WHERE comment LIKE '%magna%aliqua%';\n")
    w("SELECT group_concat(name, ',') FROM (SELECT name FROM customer WHERE city='Oslo' ORDER BY name, id LIMIT 50);\n")
    w("SELECT customer, count(*) FROM orders GROUP BY customer ORDER BY 2 DESC, 1 LIMIT 5;\n")
    w("SELECT length(group_concat(comment)) FROM (SELECT comment FROM orders ORDER BY price DESC, id LIMIT 20000);\n")
    w("UPDATE orders SET comment = comment || ' (checked)' WHERE qty > 15;\n")
    w("DELETE FROM orders WHERE price < 20;\n")
    w("SELECT count(*), sum(length(comment)) FROM orders;\n")
    w("CREATE TABLE summary AS SELECT customer, count(*) AS n, sum(qty) AS q FROM orders GROUP BY customer;\n")
    w("SELECT count(*), sum(n), sum(q) FROM summary;\n")
    w("DROP INDEX orders_item;\n")
    w("DELETE FROM orders WHERE id % 3 = 0;\n")
    w("SELECT count(*) FROM orders;\n")


if __name__ == "__main__":
    main()
