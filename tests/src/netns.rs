//! Test hosts in network namespaces: each "host" is a namespace joined to this machine by
//! a veth pair, so consumers run in it reach servers that listen on the host side of
//! its link, and the link can be cut (`ip link set ... down`) mid-run.
//!
//! One [`NetLab`] takes a private /24, `10.231.X.0/24` with X random per run and not in use
//! on this machine; host `i` gets the /30 at `10.231.X.4i`: `.4i+1` on this machine's side
//! (servers bind it), `.4i+2` inside the namespace. A `blackhole 10.231.X.0/24` route on
//! this machine is the safety net: while a link is down, packets for that host are
//! dropped here (like a dead cable) instead of following the default route. Namespaces
//! have no default route, and forwarding stays off, so nothing leaves the machine.
//!
//! Names are unique per run (`omsXXXXXX-i`). Everything is deleted on drop, also when the
//! test panics. [`NetLab::create`] fails with the reason when namespaces are not
//! permitted (not root, no CAP_NET_ADMIN, no `ip`); tests then skip with that message.

use std::process::{Command, Stdio};

use rand::Rng;

/// Runs `ip ARGS`; `Err` with its stderr when it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Namespaced test hosts joined to this machine; removed on drop.
pub struct NetLab {
    id: String,
    subnet: u8,
    namespaces: Vec<String>,
    host_links: Vec<String>,
    blackhole: Option<String>,
}

impl NetLab {
    /// Creates `hosts` namespaces with their links; `Err` says why it cannot.
    pub fn create(hosts: usize) -> Result<NetLab, String> {
        assert!((1..=60).contains(&hosts), "1 to 60 hosts per lab");
        let id = format!("{:06x}", rand::rng().random::<u32>() & 0xff_ffff);
        let subnet = free_subnet()?;
        let mut lab = NetLab {
            id,
            subnet,
            namespaces: Vec::new(),
            host_links: Vec::new(),
            blackhole: None,
        };
        let blackhole = format!("10.231.{subnet}.0/24");
        ip(&["route", "add", "blackhole", &blackhole])?;
        lab.blackhole = Some(blackhole);
        for i in 0..hosts {
            lab.add_host(i)?;
        }
        Ok(lab)
    }

    fn add_host(&mut self, i: usize) -> Result<(), String> {
        let ns = format!("oms{}-{i}", self.id);
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        let host_link = format!("oms{}h{i}", self.id);
        let ns_link = format!("oms{}n{i}", self.id);
        ip(&[
            "link", "add", &host_link, "type", "veth", "peer", "name", &ns_link,
        ])?;
        self.host_links.push(host_link.clone());
        ip(&["link", "set", &ns_link, "netns", &ns])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", self.server_addr(i)),
            "dev",
            &host_link,
        ])?;
        ip(&["link", "set", &host_link, "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/30", self.host_addr(i)),
            "dev",
            &ns_link,
        ])?;
        ip(&["-n", &ns, "link", "set", &ns_link, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// Name of host `i`'s namespace (for `ip netns exec`).
    pub fn netns(&self, i: usize) -> &str {
        &self.namespaces[i]
    }

    /// This machine's address on host `i`'s link: servers bind it, host `i` dials it.
    pub fn server_addr(&self, i: usize) -> String {
        format!("10.231.{}.{}", self.subnet, 4 * i + 1)
    }

    /// Host `i`'s own address, inside its namespace.
    pub fn host_addr(&self, i: usize) -> String {
        format!("10.231.{}.{}", self.subnet, 4 * i + 2)
    }

    /// Every server-side address (what private servers should bind besides loopback).
    pub fn server_addrs(&self) -> Vec<String> {
        (0..self.namespaces.len())
            .map(|i| self.server_addr(i))
            .collect()
    }

    /// Cuts host `i`'s link: its packets are dropped from now on, without a reset.
    pub fn cut(&self, i: usize) {
        ip(&["link", "set", &self.host_links[i], "down"]).expect("cut the link");
    }

    /// Brings host `i`'s link back.
    pub fn restore(&self, i: usize) {
        ip(&["link", "set", &self.host_links[i], "up"]).expect("restore the link");
    }

    /// True when host `i` reaches `addr:port` over TCP within 2 s (runs `bash` in the
    /// namespace, so it sees exactly what a consumer there sees).
    pub fn can_reach(&self, i: usize, addr: &str, port: u16) -> bool {
        Command::new("ip")
            .args(["netns", "exec", self.netns(i), "timeout", "2", "bash", "-c"])
            .arg(format!("exec 3<>/dev/tcp/{addr}/{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it, and so the pair.
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        for link in &self.host_links {
            let _ = ip(&["link", "del", link]);
        }
        if let Some(route) = &self.blackhole {
            let _ = ip(&["route", "del", "blackhole", route]);
        }
    }
}

/// A third octet X such that nothing on this machine uses 10.231.X.0/24.
fn free_subnet() -> Result<u8, String> {
    let out = Command::new("ip")
        .args(["-4", "-o", "route", "show", "table", "all"])
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    let routes = String::from_utf8_lossy(&out.stdout).to_string();
    let out = Command::new("ip")
        .args(["-4", "-o", "addr"])
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    let addrs = String::from_utf8_lossy(&out.stdout).to_string();
    for _ in 0..100 {
        let x: u8 = rand::rng().random();
        let net = format!("10.231.{x}.");
        if !routes.contains(&net) && !addrs.contains(&net) {
            return Ok(x);
        }
    }
    Err("no free 10.231.X.0/24 subnet".into())
}

/// Checks that network namespaces can be made here (by making and deleting one).
pub fn namespaces_permitted() -> Result<(), String> {
    let probe = format!("omsprobe{:06x}", rand::rng().random::<u32>() & 0xff_ffff);
    ip(&["netns", "add", &probe])?;
    let _ = ip(&["netns", "del", &probe]);
    Ok(())
}
