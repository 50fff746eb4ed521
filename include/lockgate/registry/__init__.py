"""MLflow Model Registry adapter: aliases, lockgate.* tags, approvals, the audit trail."""
