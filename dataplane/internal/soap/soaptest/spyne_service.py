#!/usr/bin/python3
"""A SOAP service built with spyne (Debian's python3-spyne), for the tests.

Usage: spyne_service.py PORT   (0: any free port; prints "listening PORT")

Serves the same service as document/literal SOAP 1.1 at /soap11 and SOAP
1.2 at /soap12 (WSDL at ?wsdl), with arrays, nested types, an
enumeration, dates, a client fault and a server fault. GET /last returns
the last SOAP request received, so a test can see what the gateway sent.
"""
import sys
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIServer, WSGIRequestHandler, make_server

from spyne import (Application, Array, Boolean, ComplexModel, Date, DateTime,
                   Double, Enum, Fault, Integer, ServiceBase, Unicode, rpc)
from spyne.protocol.soap import Soap11, Soap12
from spyne.server.wsgi import WsgiApplication

NS = "urn:portico:quotes"

Side = Enum("buy", "sell", type_name="Side")


class Address(ComplexModel):
    __namespace__ = NS
    street = Unicode
    city = Unicode(min_occurs=1)


class Customer(ComplexModel):
    __namespace__ = NS
    name = Unicode(min_occurs=1)
    address = Address
    tags = Unicode(max_occurs="unbounded")
    since = Date


class Quote(ComplexModel):
    __namespace__ = NS
    symbol = Unicode
    price = Double
    volume = Integer
    side = Side
    day = Date
    at = DateTime
    open = Boolean


class QuoteService(ServiceBase):
    @rpc(Unicode(min_occurs=1), Side, Date, _returns=Quote)
    def GetQuote(ctx, symbol, side, day):
        if symbol == "NOPE":
            raise Fault(faultcode="Client.UnknownSymbol", faultstring="no such symbol: " + symbol,
                        detail={"symbol": symbol, "hint": "try ACME"})
        if symbol == "BOOM":
            raise Fault(faultcode="Server", faultstring="the quote backend is down")
        import datetime
        return Quote(symbol=symbol, price=12.5, volume=1000, side=side or "buy",
                     day=day or datetime.date(2026, 1, 2),
                     at=datetime.datetime(2026, 1, 2, 15, 4, 5), open=True)

    @rpc(Unicode(max_occurs="unbounded"), _returns=Array(Quote))
    def GetQuotes(ctx, symbols):
        out = []
        for i, s in enumerate(symbols or []):
            out.append(Quote(symbol=s, price=1.5 * (i + 1), volume=i))
        return out

    @rpc(Customer, _returns=Customer)
    def Echo(ctx, customer):
        return customer

    @rpc(Integer(min_occurs=1), Integer(min_occurs=1), _returns=Integer)
    def Add(ctx, a, b):
        return a + b


def app(proto):
    return WsgiApplication(Application([QuoteService], tns=NS, name="Quotes",
                                       in_protocol=proto(validator="lxml"), out_protocol=proto()))


soap11 = app(Soap11)
soap12 = app(Soap12)
last = {"body": b""}
lock = threading.Lock()


def dispatch(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/last":
        with lock:
            body = last["body"]
        start_response("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
        return [body]
    if environ.get("REQUEST_METHOD") == "POST":
        n = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(n)
        with lock:
            last["body"] = body
        import io
        environ["wsgi.input"] = io.BytesIO(body)
    if path == "/soap11":
        return soap11(environ, start_response)
    if path == "/soap12":
        return soap12(environ, start_response)
    if path == "/plain":
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"<html><body>not SOAP</body></html>"]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


if __name__ == "__main__":
    srv = make_server("127.0.0.1", int(sys.argv[1]), dispatch, server_class=Server, handler_class=Quiet)
    print("listening", srv.server_port, flush=True)
    srv.serve_forever()
