"""The cache: backends (SQLite, Redis, memory), cache-aside reads, the near cache, invalidation after writes."""
