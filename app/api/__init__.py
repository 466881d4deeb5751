"""JSON routers, one per domain. Thin: parse, call one service function, return."""
