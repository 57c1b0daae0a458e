-- Who an account is at the remote, as its connector last reported it once connected: a WhatsApp
-- number's phone number and profile name. Shown so the operator knows which phone to pick up.
ALTER TABLE accounts ADD COLUMN remote_id TEXT;
ALTER TABLE accounts ADD COLUMN remote_name TEXT;
