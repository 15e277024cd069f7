"""Runs the unmodified scim2-server CLI with its listening socket wrapped in TLS.

Usage: python scim_tls.py CERT KEY [scim2-server arguments...]
scim2-server itself serves plain HTTP only; this wraps the socket its own make_server()
returns, so everything above the socket is the real server.
"""
import ssl
import sys

import scim2_server.testserver.cli as cli

cert, key = sys.argv[1], sys.argv[2]
sys.argv = ["scim2-server", *sys.argv[3:]]
_make_server = cli.make_server


def make_tls_server(*args, **kwargs):
    server = _make_server(*args, **kwargs)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server


cli.make_server = make_tls_server
cli.main()
