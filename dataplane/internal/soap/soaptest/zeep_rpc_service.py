#!/usr/bin/python3
"""An rpc/literal SOAP service whose messages are read and written by zeep
(Debian's python3-zeep), for the tests.

Usage: zeep_rpc_service.py WSDL PORT   (0: any free port; prints "listening PORT")

Serves the operation PlaceOrder of the WSDL's port "Orders" at
/soap/orders: zeep deserializes the request as its WSDL describes it (so a
request zeep cannot read is answered with a Client fault), and serializes
the answer from the same WSDL. A customer named "reject" gets a Client
fault whose detail is the WSDL's OrderRejected element. GET /last returns
the last request.
"""
import sys
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIServer, WSGIRequestHandler, make_server

from lxml import etree
from zeep import Client

client = Client(sys.argv[1])
binding = client.wsdl.services["OrderService"].ports["Orders"].binding
operation = binding.get("PlaceOrder")
last = {"body": b""}
lock = threading.Lock()

FAULT = """<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><e:Fault>
<faultcode>e:Client</faultcode><faultstring>{msg}</faultstring>{detail}</e:Fault></e:Body></e:Envelope>"""


def fault(start_response, msg, detail=""):
    body = FAULT.format(msg=msg, detail=detail).encode()
    start_response("500 Internal Server Error", [("Content-Type", "text/xml; charset=utf-8")])
    return [body]


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/last":
        with lock:
            body = last["body"]
        start_response("200 OK", [("Content-Type", "text/xml")])
        return [body]
    n = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(n)
    with lock:
        last["body"] = body
    if environ.get("HTTP_SOAPACTION", "").strip('"') != "urn:example:orders#PlaceOrder":
        return fault(start_response, "wrong SOAPAction " + environ.get("HTTP_SOAPACTION", ""))
    try:
        req = operation.input.deserialize(etree.fromstring(body))
    except Exception as e:  # what zeep cannot read is the client's fault
        return fault(start_response, "zeep could not read the request: %s" % e)
    order = req["order"]
    if order["customer"] == "reject":
        return fault(start_response, "rejected",
                     '<detail><t:OrderRejected xmlns:t="urn:example:orders:types"><reason>blocked customer</reason>'
                     '<retryable>0</retryable></t:OrderRejected></detail>')
    lines = [{"sku": l["sku"], "qty": l["qty"] * (2 if req["priority"] == "high" else 1), "price": l["price"]}
             for l in order["line"]]
    out = operation.output.serialize(id=9000000000 + len(lines), lines={"line": lines})
    data = etree.tostring(out.content, xml_declaration=True, encoding="UTF-8")
    start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8")])
    return [data]


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


if __name__ == "__main__":
    srv = make_server("127.0.0.1", int(sys.argv[2]), app, server_class=Server, handler_class=Quiet)
    print("listening", srv.server_port, flush=True)
    srv.serve_forever()
