"""The strongest peers: nchan (an nginx module in C) and Pushpin (a push proxy
in C++ and Rust), each started by the suite on a free loopback port with its
configuration written into the run's scratch directory. Pushpin and its
origin are pushpin_origin.py's.

Both are configured as their documentation recommends for this machine: one
worker per core, no compression (neither offers it unless a client asks, and
the load generator never does), logs off the hot path. What else is set, and
why, is said next to each setting.

nchan (https://nchan.io): channels are named in the URL; ``/sub/<channel>``
subscribes over WebSocket, EventSource or long polling (by the request's own
headers), ``/pub/<channel>`` publishes a POSTed body, or each frame of a WebSocket.
"""

from __future__ import annotations

import os
from pathlib import Path

from hubbub.bench import Server

NGINX = "/usr/sbin/nginx"
NCHAN_MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so"
#: Connections a worker may hold: the idle scenario's 100,000 and some.
WORKER_CONNECTIONS = 120_000


def nchan_config(port: int, scratch: Path, workers: int | None = None) -> str:
    """nginx.conf of an nchan server on 127.0.0.1:``port``, its files in ``scratch``."""
    workers = workers or os.cpu_count() or 1
    temp = "\n".join(f"  {kind}_temp_path {scratch / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""\
load_module {NCHAN_MODULE};
daemon off;
# nginx's advice: one worker per core.
worker_processes {workers};
worker_rlimit_nofile {2 * WORKER_CONNECTIONS + 1024};
pid {scratch / "nginx.pid"};
error_log {scratch / "error.log"} warn;
events {{
  worker_connections {WORKER_CONNECTIONS};
}}
http {{
  access_log off;
  tcp_nodelay on;
{temp}
  # The publisher POSTs every message on one keep-alive connection; nginx
  # closes one after 1,000 requests by default.
  keepalive_requests 1000000000;
  # Room for 100,000 channels; the memory is only used as it is touched.
  nchan_shared_memory_size 512m;
  # As many messages kept per channel as hubbub buffers per subscriber (1,024),
  # rather than nchan's 10: a subscriber that falls behind gets them all.
  nchan_message_buffer_length 1024;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location ~ ^/pub/(.+)$ {{
      nchan_publisher http websocket;
      nchan_channel_id $1;
    }}
    location ~ ^/sub/(.+)$ {{
      nchan_subscriber websocket eventsource longpoll;
      nchan_channel_id $1;
      # A new subscriber waits for the next message (as hubbub's after=end).
      nchan_subscriber_first_message newest;
    }}
  }}
}}
"""


def _nchan_argv(port: int, scratch: Path) -> list[str]:
    (scratch / "nginx.conf").write_text(nchan_config(port, scratch))
    return [NGINX, "-p", str(scratch), "-c", str(scratch / "nginx.conf")]


#: WebSocket fan-out's publisher sends its messages over a WebSocket to
#: /pub/ ("ws"), as to hubbub; subscribers connect to /sub/ ("ws_sub").
NCHAN = Server("nchan", _nchan_argv,
               {"ws": "/pub/{topic}", "ws_sub": "/sub/{topic}", "sse": "/sub/{topic}",
                "publish": "/pub/{topic}", "poll": "/sub/{topic}"},
               dialect="raw", python=False, tree=True)


#: pushpin_origin.py runs on the suite's Python (benchmarks/.venv: Starlette, httpx).
PUSHPIN_ORIGIN = Path(__file__).resolve().parent / "pushpin_origin.py"
PEER_PYTHON = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "python"

#: Pushpin, its origin (Python) counted with it: every message a WebSocket
#: publisher sends goes through the origin (WebSocket-over-HTTP), which
#: publishes it through Pushpin's control API, as Pushpin's docs describe.
PUSHPIN = Server("pushpin",
                 lambda port, scratch: [str(PEER_PYTHON), str(PUSHPIN_ORIGIN), str(port),
                                        str(scratch)],
                 {"ws": "/ws/pub/{topic}", "ws_sub": "/ws/sub/{topic}", "sse": "/events/{topic}",
                  "publish": "/publish/{topic}", "poll": "/poll/{topic}", "ready": "/ready"},
                 dialect="raw", python=False, tree=True)
