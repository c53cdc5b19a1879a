"""HTTP routes and the application that ties every layer together."""
