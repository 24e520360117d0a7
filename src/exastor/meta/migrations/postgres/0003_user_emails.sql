-- Version 3: users' e-mail addresses, for S3 ACL grants by e-mail (emailAddress grantees,
-- `exastor user add --email`). Optional, at most one address per user, one user per address.
CREATE TABLE user_emails (
    email       TEXT PRIMARY KEY,             -- lower-cased
    name        TEXT NOT NULL UNIQUE
);
