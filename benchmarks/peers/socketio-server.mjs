// Peer: the Node socket.io server, broadcasting to a room (the conventions of
// socketio_app.py). Usage: node socketio-server.mjs PORT
import { Server } from "socket.io";

const port = Number(process.argv[2]);
const io = new Server(port, { transports: ["websocket"], serveClient: false, perMessageDeflate: false });
io.on("connection", (socket) => {
  socket.on("join", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack("ok");
  });
  socket.on("pub", (data) => io.to("bench").emit("m", data));
});
