// Peer: the Node socket.io server, broadcasting to a room (the conventions of
// socketio_app.py). Usage: node socketio-server.mjs PORT
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2]);
// Loopback only, as every server of the suite: on all addresses the port could
// clash with a source port the load generator used on 127.0.0.2-17 (EADDRINUSE).
const http = createServer();
const io = new Server(http, { transports: ["websocket"], serveClient: false, perMessageDeflate: false });
http.listen(port, "127.0.0.1");
io.on("connection", (socket) => {
  socket.on("join", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack("ok");
  });
  socket.on("pub", (data) => io.to("bench").emit("m", data));
});
