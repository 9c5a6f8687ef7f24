"""pytest plugin: fixtures that start the fake portal."""
