/**
 * One socket write per event-loop turn for the small messages a peer sends: the coordinator and
 * its clients answer message for message (a group result, its verdict, the lease that follows),
 * and over loopback each WebSocket frame written alone cost a write syscall on one side and a
 * read, a wake-up and a parse pass on the other, which at a few thousand messages a second was
 * a large share of the train process's CPU. sendCoalesced() corks the TCP socket under the
 * WebSocket at the first message of a turn and uncorks it in setImmediate, so the frames of that
 * turn leave in one writev and usually arrive in one read. Frames, their order and their content
 * are unchanged; a frame waits at most until the end of the current turn.
 *
 * The socket is ws's `_socket` (a net.Socket); where it is absent (not yet connected, another
 * transport) the frame is sent as it is.
 */
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';

const corked = new WeakSet<Socket>();

function uncork(socket: Socket): void {
  corked.delete(socket);
  socket.uncork();
}

/** ws.send(data) with the socket corked until the end of this event-loop turn. */
export function sendCoalesced(ws: WebSocket, data: Uint8Array): void {
  const socket = (ws as unknown as { _socket?: Socket | null })._socket;
  if (socket && typeof socket.cork === 'function' && !corked.has(socket)) {
    corked.add(socket);
    socket.cork();
    setImmediate(uncork, socket);
  }
  ws.send(data);
}
