"""`pktlab wrap`: unmodified programs whose traffic goes out from a PacketLab endpoint.

    from packetlab.wrap.runner import WrapOptions, wrap

    async def experiment(session):
        result = await wrap(session, ["curl", "-s", "https://example.net/"], WrapOptions())
        return result.status

Built on the public controller API only. See docs/wrap.md.
"""
