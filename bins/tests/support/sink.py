# A real SMTP receiver for the remote-delivery tests (aiosmtpd, Debian's
# python3-aiosmtpd). Usage: sink.py OUTDIR MODE, MODE "accept" or "reject".
# Prints "PORT n" once listening on 127.0.0.1. Each accepted message is
# written as OUTDIR/N.eml (the DATA bytes as received, dot-unstuffed) and
# OUTDIR/N.env (sender, recipients, MAIL parameters), made visible by a
# rename once complete.
import asyncio
import os
import sys

from aiosmtpd.smtp import SMTP


# Messages so far, over all connections (each has its own Handler).
COUNT = [0]


class Handler:
    def __init__(self, out, mode):
        self.out = out
        self.mode = mode

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.mode == "reject":
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        COUNT[0] += 1
        n = COUNT[0]
        base = os.path.join(self.out, str(n))
        with open(base + ".tmp", "wb") as f:
            f.write(envelope.original_content)
        with open(base + ".envtmp", "w") as f:
            f.write("FROM %s\n" % envelope.mail_from)
            f.write("TO %s\n" % " ".join(envelope.rcpt_tos))
            f.write("PARAMS %s\n" % " ".join(envelope.mail_options))
        os.rename(base + ".envtmp", base + ".env")
        os.rename(base + ".tmp", base + ".eml")
        return "250 2.0.0 Ok: queued as X%d" % n


async def main():
    out, mode = sys.argv[1], sys.argv[2]
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Handler(out, mode), hostname="sink.test"), "127.0.0.1", 0
    )
    print("PORT", server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


asyncio.run(main())
