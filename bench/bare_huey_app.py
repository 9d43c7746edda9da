"""Plain Huey, no Sprig: the reference bench/tasks.py measures Sprig's queue against.

    huey_consumer bench.bare_huey_app.huey -w 4 -k thread -q

A RedisHuey with Huey's defaults on Redis database 14, named by BENCH_QUEUE, and the benchmark's
two tasks written as bench/tasks.py writes them for Sprig, so both do the same work per task.
"""
import os

from huey import RedisHuey

from bench.noop_tasks import register

huey = RedisHuey(os.environ['BENCH_QUEUE'], url='redis://127.0.0.1:6379/14')
noop, clock = register(huey)
