"""DeviceFleet sink."""
