//! Attack-pattern detection (SQL injection, XSS, path traversal, command injection, scanners).
