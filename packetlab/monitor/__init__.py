"""WebAssembly monitors (PROTOCOL.md §8): the host ABI, the wasmtime runtime, persistent
memory, and building monitors. Below the roles: the endpoint and the `pktlab monitor`
tools both use it."""
