-- The oldest schema Sprig shipped (the end of its first milestone: accounts and the task
-- engine, before banners, courses and seckill), as SQLite made it. tests/test_migrations.py
-- upgrades a database created from it.
CREATE TABLE "consumerbeat" ("id" VARCHAR(100) NOT NULL PRIMARY KEY, "host" VARCHAR(255) NOT NULL, "pid" INTEGER NOT NULL, "workers" INTEGER NOT NULL, "started_at" DATETIME NOT NULL, "beat_at" DATETIME NOT NULL);
CREATE INDEX "consumerbeat_beat_at" ON "consumerbeat" ("beat_at");
CREATE TABLE "lease" ("name" VARCHAR(50) NOT NULL PRIMARY KEY, "holder" VARCHAR(100), "expires" DATETIME NOT NULL);
CREATE TABLE "schedule" ("name" VARCHAR(100) NOT NULL PRIMARY KEY, "every" INTEGER NOT NULL, "last_run" DATETIME, "next_run" DATETIME NOT NULL);
CREATE TABLE "taskrecord" ("id" VARCHAR(64) NOT NULL PRIMARY KEY, "name" VARCHAR(100) NOT NULL, "args" TEXT NOT NULL, "payload" TEXT, "state" VARCHAR(10) NOT NULL, "user_id" INTEGER, "consumer" VARCHAR(100), "created_at" DATETIME NOT NULL, "eta" DATETIME, "started_at" DATETIME, "finished_at" DATETIME, "retries" INTEGER NOT NULL, "error" TEXT, "result" TEXT, "requeued" INTEGER NOT NULL);
CREATE INDEX "taskrecord_name" ON "taskrecord" ("name");
CREATE INDEX "taskrecord_state" ON "taskrecord" ("state");
CREATE INDEX "taskrecord_user_id" ON "taskrecord" ("user_id");
CREATE INDEX "taskrecord_created_at" ON "taskrecord" ("created_at");
CREATE TABLE "user" ("id" INTEGER NOT NULL PRIMARY KEY, "username" VARCHAR(20) NOT NULL, "mobile" VARCHAR(11), "email" VARCHAR(254), "password_hash" VARCHAR(200) NOT NULL, "is_admin" INTEGER NOT NULL, "is_active" INTEGER NOT NULL, "created" DATETIME NOT NULL);
CREATE UNIQUE INDEX "user_username" ON "user" ("username");
CREATE UNIQUE INDEX "user_mobile" ON "user" ("mobile");
CREATE UNIQUE INDEX "user_email" ON "user" ("email");
CREATE TABLE "token" ("id" INTEGER NOT NULL PRIMARY KEY, "digest" VARCHAR(64) NOT NULL, "user_id" INTEGER NOT NULL, "created" DATETIME NOT NULL, "expires" DATETIME NOT NULL, FOREIGN KEY ("user_id") REFERENCES "user" ("id") ON DELETE CASCADE);
CREATE UNIQUE INDEX "token_digest" ON "token" ("digest");
CREATE INDEX "token_user_id" ON "token" ("user_id");
CREATE INDEX "token_expires" ON "token" ("expires");
