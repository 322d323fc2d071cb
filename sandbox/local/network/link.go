package network

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// claimSlot takes a free /30 of the pool: slot n is a lease file created with O_EXCL, host-wide.
func (m *Manager) claimSlot(id string) (int, error) {
	n := 1 << (32 - m.cfg.Pool.Bits() - 2)
	// Slot 0 holds the pool's network address; start at 1. Scan from a point derived from the id
	// so concurrent creators rarely race for the same file.
	start := 1
	for _, c := range id {
		start = (start*31 + int(c)) % n
	}
	for i := 0; i < n; i++ {
		slot := (start + i) % n
		if slot == 0 {
			continue
		}
		f, err := os.OpenFile(filepath.Join(m.slotsDir(), strconv.Itoa(slot)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("claiming a network address: %w", err)
		}
		_, werr := f.WriteString(id)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return -1, fmt.Errorf("claiming a network address: %w", werr)
		}
		return slot, nil
	}
	return -1, fmt.Errorf("no free address in the sandbox network pool %s", m.cfg.Pool)
}

func (m *Manager) releaseSlot(slot int, id string) {
	p := filepath.Join(m.slotsDir(), strconv.Itoa(slot))
	if b, err := os.ReadFile(p); err == nil && string(b) == id {
		_ = os.Remove(p)
	}
}

// slotAddrs returns the host (gateway) and sandbox addresses of a slot's /30.
func (m *Manager) slotAddrs(slot int) (gw, sb netip.Addr) {
	b := m.cfg.Pool.Addr().As4()
	base := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	base += uint32(slot) * 4
	mk := func(v uint32) netip.Addr {
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	return mk(base + 1), mk(base + 2)
}

// hostNets are the host's addresses and networks, which sandboxes never reach.
type hostNets struct {
	// Addrs are the host's IPv4 addresses (loopback excluded), and the pool.
	Addrs []netip.Prefix
	// Nets are the networks directly connected to the host (its LANs), the pool excluded.
	Nets []netip.Prefix
}

// hostNetworks reads the host's IPv4 addresses and connected networks, and checks the pool
// overlaps none of them.
func hostNetworks(pool netip.Prefix) (hostNets, error) {
	var h hostNets
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return h, fmt.Errorf("listing host addresses: %w", err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP.To4())
		if !ok || ip.IsLoopback() {
			continue
		}
		if pool.Contains(ip) {
			continue // a sandbox gateway
		}
		h.Addrs = append(h.Addrs, netip.PrefixFrom(ip, 32))
		ones, _ := a.Mask.Size()
		if ones < 32 && ones > 0 {
			n := netip.PrefixFrom(ip, ones).Masked()
			if n.Overlaps(pool) {
				return h, fmt.Errorf("sandbox network pool %s overlaps the host network %s: choose another pool", pool, n)
			}
			h.Nets = append(h.Nets, n)
		}
	}
	// Point-to-point peers (a /32 route to a neighbour) count as connected networks too.
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err == nil {
		for _, r := range routes {
			if r.Dst == nil || r.Scope != netlink.SCOPE_LINK || r.Gw != nil {
				continue
			}
			ip, ok := netip.AddrFromSlice(r.Dst.IP.To4())
			if !ok {
				continue
			}
			ones, _ := r.Dst.Mask.Size()
			n := netip.PrefixFrom(ip, ones).Masked()
			if pool.Overlaps(n) {
				if pool.Bits() <= n.Bits() {
					continue // a sandbox link
				}
				return h, fmt.Errorf("sandbox network pool %s overlaps the host route %s: choose another pool", pool, n)
			}
			if !slices.Contains(h.Nets, n) && !ip.IsLoopback() {
				h.Nets = append(h.Nets, n)
			}
		}
	}
	h.Addrs = append(h.Addrs, pool)
	return h, nil
}

// enableForwarding turns on IPv4 forwarding, which sandbox egress needs (what the sandbox may
// forward is decided by its nftables table, not by this switch).
func enableForwarding() error {
	const p = "/proc/sys/net/ipv4/ip_forward"
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("reading %s: %w", p, err)
	}
	if len(b) > 0 && b[0] == '1' {
		return nil
	}
	if err := os.WriteFile(p, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("enabling IPv4 forwarding (sandbox network modes need it): %w", err)
	}
	return nil
}

// createVeth makes the veth pair in the host namespace: the host end with the gateway address,
// up, without IPv6; the peer stays down until Attach moves it.
func createVeth(st *state) error {
	_ = deleteLinks(st) // leftovers of a crashed attempt under the same id
	la := netlink.NewLinkAttrs()
	la.Name = st.HostIf
	la.MTU = 1500
	veth := &netlink.Veth{LinkAttrs: la, PeerName: st.PeerIf}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("creating veth %s: %w", st.HostIf, err)
	}
	host, err := netlink.LinkByName(st.HostIf)
	if err != nil {
		return fmt.Errorf("finding veth %s: %w", st.HostIf, err)
	}
	// No IPv6 on the host end: no link-local address a sandbox could talk to.
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+st.HostIf+"/disable_ipv6", []byte("1\n"), 0o644)
	addr := &netlink.Addr{IPNet: prefixToIPNet(netip.PrefixFrom(st.Gateway, 30))}
	if err := netlink.AddrAdd(host, addr); err != nil {
		return fmt.Errorf("addressing veth %s: %w", st.HostIf, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("raising veth %s: %w", st.HostIf, err)
	}
	return nil
}

// deleteLinks removes the host end (which removes the pair) and a peer still on the host.
func deleteLinks(st *state) error {
	var errs []error
	for _, name := range []string{st.HostIf, st.PeerIf} {
		if name == "" {
			continue
		}
		l, err := netlink.LinkByName(name)
		if err != nil {
			continue // gone (a veth pair dies with the sandbox's namespace)
		}
		if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("deleting %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// attachPeer moves the peer into pid's network namespace as eth0 and configures it.
func attachPeer(st *state, pid int) error {
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		return fmt.Errorf("opening the network namespace of %d: %w", pid, err)
	}
	defer ns.Close()
	return attachPeerNs(st, ns)
}

// attachPeerNs moves the peer into ns as eth0 and configures it.
func attachPeerNs(st *state, ns netns.NsHandle) error {
	peer, err := netlink.LinkByName(st.PeerIf)
	if err != nil {
		return fmt.Errorf("finding veth peer %s: %w", st.PeerIf, err)
	}
	if err := netlink.LinkSetNsFd(peer, int(ns)); err != nil {
		return fmt.Errorf("moving %s into the sandbox: %w", st.PeerIf, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in the sandbox: %w", err)
	}
	defer h.Close()
	l, err := h.LinkByName(st.PeerIf)
	if err != nil {
		return fmt.Errorf("finding %s in the sandbox: %w", st.PeerIf, err)
	}
	if err := h.LinkSetName(l, "eth0"); err != nil {
		return fmt.Errorf("renaming the sandbox link: %w", err)
	}
	if err := InNetns(ns, func() error {
		return os.WriteFile("/proc/sys/net/ipv6/conf/eth0/disable_ipv6", []byte("1\n"), 0o644)
	}); err != nil {
		return fmt.Errorf("disabling IPv6 in the sandbox: %w", err)
	}
	if err := h.AddrAdd(l, &netlink.Addr{IPNet: prefixToIPNet(netip.PrefixFrom(st.Address, 30))}); err != nil {
		return fmt.Errorf("addressing the sandbox link: %w", err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("raising the sandbox link: %w", err)
	}
	if lo, err := h.LinkByName("lo"); err == nil {
		_ = h.LinkSetUp(lo)
	}
	gw := st.Gateway.AsSlice()
	if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw}); err != nil {
		return fmt.Errorf("routing the sandbox: %w", err)
	}
	return nil
}

// InNetns runs f on an OS thread switched into ns: sockets made there belong to ns, and
// /proc/sys/net shows the network namespace of the thread that opens it.
func InNetns(ns netns.NsHandle, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is not unlocked: if switching back fails it must die with this goroutine.
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// makeNetns creates a network namespace that lives as long as a bind mount of it at path (an
// empty file made here). The creating thread switches back to its own namespace; if it cannot,
// it stays locked and dies with its goroutine.
func makeNetns(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("creating the namespace file: %w", err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := netns.New() // unshares this thread into the new namespace
		if err != nil {
			errc <- fmt.Errorf("creating a network namespace: %w", err)
			return
		}
		merr := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", int(ns)), path, "", unix.MS_BIND, "")
		ns.Close()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(merr, err)
			return
		}
		runtime.UnlockOSThread()
		if merr != nil {
			merr = fmt.Errorf("pinning the network namespace at %s: %w", path, merr)
		}
		errc <- merr
	}()
	if err := <-errc; err != nil {
		_ = os.Remove(path)
		return err
	}
	return nil
}

// removeNetns unmounts and removes a namespace file made by makeNetns; a missing file is fine.
func removeNetns(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting the network namespace %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}
