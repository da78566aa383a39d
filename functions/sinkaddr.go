package functions

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// ErrSinkAddress says a sink is at an address that sinks may not use.
var ErrSinkAddress = errors.New("sink address refused")

// SinkAllowList names the addresses a sink may have beyond the public ones.
// Without it, a sink at a loopback, private, link-local (where cloud metadata
// services answer), shared (carrier-grade NAT), unspecified or multicast
// address is refused: a caller must not make the platform reach into its
// own network.
type SinkAllowList []netip.Prefix

// ParseSinkAllowList reads CIDR prefixes (10.0.0.0/8) or single addresses.
func ParseSinkAllowList(entries []string) (SinkAllowList, error) {
	allow := make(SinkAllowList, 0, len(entries))
	for _, entry := range entries {
		prefix, err := netip.ParsePrefix(entry)
		if err != nil {
			addr, addrErr := netip.ParseAddr(entry)
			if addrErr != nil {
				return nil, fmt.Errorf("sink allow-list: %q is neither a CIDR prefix nor an address", entry)
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		if prefix.Addr().Is4In6() && prefix.Bits() >= 96 { // ::ffff:10.0.0.0/104 is 10.0.0.0/8
			prefix = netip.PrefixFrom(prefix.Addr().Unmap(), prefix.Bits()-96)
		}
		allow = append(allow, prefix.Masked())
	}
	return allow, nil
}

var (
	sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")
	siteLocal          = netip.MustParsePrefix("fec0::/10") // deprecated, still private
	// IPv6 prefixes that carry an IPv4 address, which a translator or relay
	// reaches: the embedded address is checked as well.
	nat64          = []netip.Prefix{netip.MustParsePrefix("64:ff9b::/96"), netip.MustParsePrefix("64:ff9b:1::/48")}
	sixToFour      = netip.MustParsePrefix("2002::/16")
	ipv4Compatible = netip.MustParsePrefix("::/96") // deprecated ::a.b.c.d
)

// embeddedIPv4 is the IPv4 address an IPv6 address carries: NAT64 (its last
// 32 bits), 6to4 (bits 16 to 48) or IPv4-compatible; ok is false otherwise.
func embeddedIPv4(addr netip.Addr) (netip.Addr, bool) {
	if !addr.Is6() {
		return netip.Addr{}, false
	}
	b := addr.As16()
	switch {
	case nat64[0].Contains(addr), nat64[1].Contains(addr), ipv4Compatible.Contains(addr) && !addr.IsUnspecified() && !addr.IsLoopback():
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	case sixToFour.Contains(addr):
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	}
	return netip.Addr{}, false
}

// CheckAddr refuses addr unless it is public or allowed; an IPv6 address
// that carries an IPv4 one must pass for both.
func (allow SinkAllowList) CheckAddr(addr netip.Addr) error {
	addr = addr.Unmap()
	if inner, ok := embeddedIPv4(addr); ok {
		if err := allow.CheckAddr(inner); err != nil {
			return fmt.Errorf("%w (carried by %s)", err, addr)
		}
	}
	for _, prefix := range allow {
		if prefix.Contains(addr) {
			return nil
		}
	}
	var kind string
	switch {
	case addr.IsLoopback():
		kind = "a loopback address"
	case addr.IsPrivate() || siteLocal.Contains(addr):
		kind = "a private address"
	case addr.IsLinkLocalUnicast() || addr.IsLinkLocalMulticast():
		kind = "a link-local address (where cloud metadata services answer)"
	case sharedAddressSpace.Contains(addr):
		kind = "a shared (carrier-grade NAT) address"
	case addr.IsUnspecified():
		kind = "the unspecified address"
	case addr.IsMulticast():
		kind = "a multicast address"
	default:
		return nil
	}
	return fmt.Errorf("%w: %s is %s; an operator allows such sinks with --sink-allow", ErrSinkAddress, addr, kind)
}

// CheckURI checks that uri is an absolute http(s) URL whose host, when it is
// an address or localhost, may be a sink. A name is checked when the
// delivery connects, against every address it resolves to then.
func (allow SinkAllowList) CheckURI(uri string) error {
	if err := ValidateSinkURI(uri); err != nil {
		return err
	}
	parsed, _ := url.Parse(uri)
	host := parsed.Hostname()
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		host = "127.0.0.1"
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		return allow.CheckAddr(addr)
	}
	return nil
}
