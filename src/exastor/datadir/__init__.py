"""A data directory (``--data``): opening its metadata, drives and namespace (opening.py), the
locks that keep a server and the offline tools apart (lock.py), and the master key that seals the
secrets in the metadata database (keys.py). Below the commands (gateway/, services/) that open a
store, above namespace/ and the layers under it."""
