-- A machine-readable reason beside error_message, for failures the queue decides itself:
-- `start_deadline_exceeded` (the job asked for startWithinSeconds and no worker started it
-- in time). NULL for every other failure, which keeps its message only.
ALTER TABLE jobs ADD COLUMN error_code text;
