"""Publishing live state to Redis (the read model for APIs and dashboards)."""
