"""DeviceFleet simulator."""
