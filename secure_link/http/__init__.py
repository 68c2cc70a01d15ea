"""The HTTP surface around the routes: middleware, proxies, OpenAPI, the web client."""
