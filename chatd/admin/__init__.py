"""
C{python -m chatd.admin} (the C{chatd-admin} console script): what an operator
does to a chatd data directory from a shell, while the server runs or not.

L{chatd.admin.__main__} reads the command line and the same settings as the
server (L{chatd.config}: C{--config}, C{--data-dir}, C{--db}, C{--key-file});
L{chatd.admin.commands} does the work through the server's own store
(L{chatd.store.sql.AdbapiStore} and L{chatd.store.operations}), so that every
statement is the server's and runs in its transactions: SQLite's write lock
and busy timeout, and PostgreSQL's transactions, keep it safe beside a running
server.
"""
