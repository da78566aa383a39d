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
		allow = append(allow, prefix.Masked())
	}
	return allow, nil
}

var sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")

// CheckAddr refuses addr unless it is public or allowed.
func (allow SinkAllowList) CheckAddr(addr netip.Addr) error {
	addr = addr.Unmap()
	for _, prefix := range allow {
		if prefix.Contains(addr) {
			return nil
		}
	}
	var kind string
	switch {
	case addr.IsLoopback():
		kind = "a loopback address"
	case addr.IsPrivate():
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
