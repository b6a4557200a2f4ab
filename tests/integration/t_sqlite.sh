#!/usr/bin/env bash
# t_sqlite: the sqlite3 shell runs a generated SQL script on an in-memory database (bulk inserts,
# indexes, joins, GROUP BY, ORDER BY, window functions, CTEs, JSON, updates and deletes, VACUUM)
# under glibc and preloaded; the printed results must be identical.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
pm_setup
command -v sqlite3 >/dev/null || pm_fail "sqlite3 not found (scripts/install-deps.sh check installs it)"

sql="$PM_TMP/script.sql"
awk 'BEGIN {
  srand(20240601)
  split("Oslo Lima Pune Kyiv Bonn Nice Cork Gent Brno Baku Riga Doha", city, " ")
  split("red green blue cyan magenta yellow black white", color, " ")
  print "PRAGMA cache_size = -16000;"
  print "CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT, tier INT, born INT);"
  print "CREATE TABLE orders(id INTEGER PRIMARY KEY, customer_id INT REFERENCES customers(id), day INT, status TEXT, note TEXT);"
  print "CREATE TABLE items(order_id INT, sku TEXT, qty INT, price REAL);"
  print "BEGIN;"
  for (i = 1; i <= 4000; i++) {
    n = ""; len = 4 + int(rand() * 10)
    for (j = 0; j < len; j++) n = n sprintf("%c", 97 + int(rand() * 26))
    printf "INSERT INTO customers VALUES(%d, %c%s%c, %c%s%c, %d, %d);\n", i, 39, n, 39, 39, city[1 + int(rand() * 12)], 39, int(rand() * 5), 1940 + int(rand() * 65)
  }
  for (i = 1; i <= 20000; i++) {
    note = ""; len = int(rand() * 60)
    for (j = 0; j < len; j++) note = note sprintf("%c", 32 + int(rand() * 90))
    gsub(/\x27/, "\x27\x27", note)
    printf "INSERT INTO orders VALUES(%d, %d, %d, %c%s%c, %c%s%c);\n", i, 1 + int(rand() * 4000), int(rand() * 730), 39, (rand() < 0.8 ? "shipped" : (rand() < 0.5 ? "open" : "cancelled")), 39, 39, note, 39
    k = 1 + int(rand() * 5)
    for (j = 0; j < k; j++)
      printf "INSERT INTO items VALUES(%d, %c%s-%03d%c, %d, %.2f);\n", i, 39, color[1 + int(rand() * 8)], int(rand() * 200), 39, 1 + int(rand() * 9), rand() * 300
  }
  print "COMMIT;"
}' >"$sql"

cat >>"$sql" <<'SQL'
CREATE INDEX orders_customer ON orders(customer_id, day);
CREATE INDEX items_order ON items(order_id);
CREATE INDEX customers_city ON customers(city, name);
.headers on
.mode list
SELECT count(*) AS customers FROM customers;
SELECT count(*) AS orders, count(DISTINCT customer_id) AS buyers FROM orders;
SELECT count(*) AS items, sum(qty) AS units, printf('%.2f', sum(qty * price)) AS revenue FROM items;
-- revenue per city and status
SELECT c.city, o.status, count(DISTINCT o.id) AS n, printf('%.2f', sum(i.qty * i.price)) AS revenue
  FROM customers c JOIN orders o ON o.customer_id = c.id JOIN items i ON i.order_id = o.id
 GROUP BY c.city, o.status ORDER BY c.city, o.status;
-- top customers
SELECT c.id, c.name, c.city, printf('%.2f', sum(i.qty * i.price)) AS spent, count(DISTINCT o.id) AS orders
  FROM customers c JOIN orders o ON o.customer_id = c.id JOIN items i ON i.order_id = o.id
 WHERE o.status = 'shipped'
 GROUP BY c.id ORDER BY sum(i.qty * i.price) DESC, c.id LIMIT 25;
-- customers without orders, left join
SELECT count(*) AS idle FROM customers c LEFT JOIN orders o ON o.customer_id = c.id WHERE o.id IS NULL;
-- window functions: running totals and ranks
SELECT customer_id, day, running, rnk FROM (
  SELECT o.customer_id, o.day,
         sum(i.qty) OVER (PARTITION BY o.customer_id ORDER BY o.day, o.id, i.rowid) AS running,
         dense_rank() OVER (PARTITION BY o.customer_id ORDER BY o.day) AS rnk
    FROM orders o JOIN items i ON i.order_id = o.id)
 WHERE customer_id % 400 = 7 ORDER BY customer_id, day, running;
-- recursive CTE: a 200k-row table sorted and grouped without an index
CREATE TABLE big AS WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < 200000)
  SELECT x, (x * 7919) % 100003 AS k, hex(x * 2654435761 % 4294967296) AS h, substr('abcdefghijklmnopqrstuvwxyz', 1 + x % 26, 1 + x % 9) AS t FROM s;
SELECT k, h, t FROM big ORDER BY h DESC, k LIMIT 12;
SELECT t, count(*), sum(k), min(h), max(h) FROM big GROUP BY t ORDER BY count(*) DESC, t LIMIT 15;
SELECT count(*) FROM big a JOIN big b ON a.k = b.x WHERE a.x % 1000 = 0;
-- strings, JSON, group_concat
SELECT city, length(group_concat(name, ',')) AS len, substr(group_concat(name, ','), 1, 60) AS names
  FROM (SELECT city, name FROM customers ORDER BY city, name) GROUP BY city ORDER BY city;
SELECT json_group_array(json_object('id', id, 'name', upper(name), 'tier', tier)) FROM (SELECT * FROM customers WHERE id % 500 = 1 ORDER BY id);
SELECT sum(length(note)), count(*) FROM orders WHERE note LIKE '%a%b%';
SELECT replace(replace(note, ' ', '_'), 'e', 'E') FROM orders WHERE id % 2500 = 0 ORDER BY id;
-- updates, deletes, rebuild
UPDATE items SET price = round(price * 1.1, 2) WHERE sku LIKE 'red%';
DELETE FROM orders WHERE status = 'cancelled';
DELETE FROM items WHERE order_id NOT IN (SELECT id FROM orders);
DROP TABLE big;
VACUUM;
SELECT count(*), printf('%.2f', sum(qty * price)) FROM items;
SELECT sku, sum(qty) FROM items GROUP BY sku ORDER BY sum(qty) DESC, sku LIMIT 10;
PRAGMA integrity_check;
SQL

echo "generated $(wc -l <"$sql") lines of SQL"
PM_STDIN="$sql" pm_compare sqlite sqlite3 -bail :memory:
head -n 3 "$PM_TMP/sqlite.glibc.out"
