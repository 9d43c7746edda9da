"""Database plumbing: binding [database] url (pooled, WAL), prepared SQL, the schema and its migrations, backup."""
