"""DeviceFleet processor."""
