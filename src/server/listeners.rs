//! Binding the public listeners: one socket per worker on each address, all with `SO_REUSEPORT`,
//! so the kernel spreads new connections across workers and no accept queue is shared.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

use super::BindError;

const BACKLOG: i32 = 1024;

/// One public address with a socket for each worker.
pub struct BoundAddress {
    pub addr: SocketAddr,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub sockets: Vec<std::net::TcpListener>,
}

/// Binds `addr` once per worker. Port 0 is resolved by the first socket and reused by the rest.
pub fn bind(
    addr: SocketAddr,
    workers: usize,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Result<BoundAddress, BindError> {
    let mut sockets = Vec::with_capacity(workers);
    let mut actual = addr;
    for _ in 0..workers.max(1) {
        let socket = reuseport_listener(actual).map_err(|source| BindError { addr, source })?;
        actual = socket
            .local_addr()
            .map_err(|source| BindError { addr, source })?;
        sockets.push(socket);
    }
    Ok(BoundAddress {
        addr: actual,
        tls,
        sockets,
    })
}

fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}
