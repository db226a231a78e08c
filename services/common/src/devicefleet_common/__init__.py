"""DeviceFleet common."""
