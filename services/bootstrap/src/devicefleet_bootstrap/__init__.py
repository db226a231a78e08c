"""DeviceFleet bootstrap."""
