"""The development environment manager: services, profiles, health, state folder."""
