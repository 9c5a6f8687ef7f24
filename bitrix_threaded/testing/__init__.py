"""The fake Bitrix24 portal: a real HTTP server on loopback for tests and benchmarks."""
