"""`exastor estimate`: predict the reduction on a user's data without storing it."""
