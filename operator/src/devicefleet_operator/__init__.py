"""DeviceFleet kopf operator."""
