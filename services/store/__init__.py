"""The store service: the one owner of the database (SQLite by default, PostgreSQL in production)."""
