"""DeviceFleet ingest."""
