-- Fills a runner store with synthetic finished runs, for the records benchmark.
-- Run it against a store the binary created (so the schema is current), e.g.
--   sqlite3 STATE_DIR/runner.sqlite3 < bench/fill-store.sql
-- bench/records.py does this with Python's sqlite3 and replaces 100000 by --runs.
-- Each run has 3 task instances with one attempt each; every tenth run failed.
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
INSERT INTO runs (job_name, run_id, schedule_time, start_time, stop_time, exit_code,
                  trigger_type, trigger_data, run_data)
SELECT 'job-' || (i % 4),
       printf('%08x-0000-4000-8000-%012x', i * 2654435761 % 4294967296, i),
       1700000000.0 + i * 60, 1700000000.0 + i * 60, 1700000000.0 + i * 60 + 5,
       CASE WHEN i % 10 = 0 THEN 1 ELSE 0 END, 'manual', '{}', '{}'
FROM n;
INSERT INTO run_meta (run_id, job_name, status, session)
SELECT run_id, job_name, CASE exit_code WHEN 0 THEN 'ok' ELSE 'failed' END, 'bench'
FROM runs WHERE job_name GLOB 'job-*';
INSERT INTO task_instances (run_id, name, file, instance, position, status)
SELECT run_id, 'task' || k, k || '0-task' || k || '.sh', 0, k, 'finished'
FROM runs, (SELECT 1 AS k UNION ALL SELECT 2 UNION ALL SELECT 3)
WHERE job_name GLOB 'job-*';
INSERT INTO attempts (instance_id, try_num, start_time, stop_time, exit_code, result)
SELECT id, 1, 1700000000.0, 1700000001.0, 0, 'OK' FROM task_instances
WHERE run_id IN (SELECT run_id FROM runs WHERE job_name GLOB 'job-*');
COMMIT;
ANALYZE;
