//! Networking on turmoil's simulated network.

use std::io;
use std::net::SocketAddr;

use qmail_core::env::{Net, NetListener, NetUdp};
use turmoil::net::{TcpListener, TcpStream, UdpSocket};

#[derive(Debug, Clone, Copy, Default)]
pub struct SimNet;

pub struct SimListener(TcpListener);

pub struct SimUdp(UdpSocket);

impl NetListener for SimListener {
    type Stream = TcpStream;

    async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        self.0.accept().await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl NetUdp for SimUdp {
    async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.0.send_to(buf, to).await
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.0.recv_from(buf).await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Net for SimNet {
    type Stream = TcpStream;
    type Listener = SimListener;
    type Udp = SimUdp;

    async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        TcpStream::connect(addr).await
    }

    async fn listen(&self, addr: SocketAddr) -> io::Result<SimListener> {
        Ok(SimListener(TcpListener::bind(addr).await?))
    }

    async fn bind_udp(&self, addr: SocketAddr) -> io::Result<SimUdp> {
        Ok(SimUdp(UdpSocket::bind(addr).await?))
    }
}
