"""A local token endpoint for benches/cli_startup.sh: every POST gets a fresh
access token at once, so a refreshing process is timed, not the network.
Prints its port, then serves until killed."""
import http.server
import json
import sys


class Tokens(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = json.dumps({"access_token": "ya29.bench-refreshed", "expires_in": 3599,
                           "token_type": "Bearer"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Tokens)
print(server.server_address[1], flush=True)
sys.stdout.close()
server.serve_forever()
