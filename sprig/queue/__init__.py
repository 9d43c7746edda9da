"""The queue engine: Huey plus task records, retry jitter, interval schedules, one leader, lost-task recovery."""
