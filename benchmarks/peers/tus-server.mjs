// Peer: the reference Node tus server, @tus/server with @tus/file-store, on
// its defaults. Usage: node tus-server.mjs PORT DIRECTORY (uploads go to
// DIRECTORY; the endpoint is /files/).
import * as http from "node:http";
import { Server } from "@tus/server";
import { FileStore } from "@tus/file-store";

const [port, directory] = [Number(process.argv[2]), process.argv[3]];
const tus = new Server({ path: "/files", datastore: new FileStore({ directory }) });
http.createServer((req, res) => tus.handle(req, res)).listen(port, "127.0.0.1");
