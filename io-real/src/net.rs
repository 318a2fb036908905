//! Networking on tokio.

use std::io;
use std::net::SocketAddr;

use qmail_core::env::{Net, NetListener, NetUdp};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

#[derive(Debug, Clone, Copy, Default)]
pub struct RealNet;

#[derive(Debug)]
pub struct RealListener(TcpListener);

#[derive(Debug)]
pub struct RealUdp(UdpSocket);

impl RealListener {
    /// Wraps a listener the caller already bound (socket activation, tests).
    pub fn from_tokio(l: TcpListener) -> Self {
        RealListener(l)
    }
}

impl NetListener for RealListener {
    type Stream = TcpStream;

    async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (s, addr) = self.0.accept().await?;
        // SMTP replies are small and latency-bound: do not wait for Nagle.
        s.set_nodelay(true)?;
        Ok((s, addr))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl NetUdp for RealUdp {
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

impl Net for RealNet {
    type Stream = TcpStream;
    type Listener = RealListener;
    type Udp = RealUdp;

    async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(s)
    }

    async fn listen(&self, addr: SocketAddr) -> io::Result<RealListener> {
        Ok(RealListener(TcpListener::bind(addr).await?))
    }

    async fn bind_udp(&self, addr: SocketAddr) -> io::Result<RealUdp> {
        Ok(RealUdp(UdpSocket::bind(addr).await?))
    }
}
