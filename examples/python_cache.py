"""python_cache.py: the program of docs/python.md. A request handler whose user cache is never
evicted, a parser that leaves reference cycles for the collector, and a question to why_alive.

    python3 -m poolmalloc run examples/python_cache.py [seconds]

It works for a moment, prints its pid, then waits `seconds` (default 3) so that `kill -USR1`
can ask for a heap report."""
import sys
import time

import poolmalloc

CACHE = {}


def load_user(uid):
    return {"id": uid, "name": "user%05d" % uid, "history": ["page/%d/%d" % (uid, i) for i in range(40)]}


def handle_request(uid):
    user = CACHE.get(uid)
    if user is None:
        user = CACHE[uid] = load_user(uid)     # never evicted: the leak
    return len(user["history"])


class Node:
    def __init__(self, parent):
        self.parent = parent
        self.children = []
        if parent is not None:
            parent.children.append(self)


def parse_document(n):
    root = Node(None)                          # parent <-> child: cycles, freed by the collector
    for _ in range(n):
        Node(root)
    return len(root.children)


def main():
    wait = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    for uid in range(20000):
        handle_request(uid)
        if uid % 100 == 0:
            parse_document(200)
    print("why_alive:", poolmalloc.why_alive(CACHE[4242]["history"]))
    s = poolmalloc.stats()
    print("stats: %.1f MiB in use, %.1f MiB mapped, sampling every %d bytes" %
          (s["in_use"] / 2**20, s["mapped"] / 2**20, s["sample_rate"]))
    print("ready", flush=True)
    time.sleep(wait)


if __name__ == "__main__":
    main()
