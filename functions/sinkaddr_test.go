package functions_test

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/functions"
)

func TestSinkAddressesOfThePlatformsOwnNetworkAreRefused(t *testing.T) {
	refused := map[string]string{
		"127.0.0.1": "loopback", "::1": "loopback", "::ffff:127.0.0.1": "loopback",
		"10.1.2.3": "private", "172.16.0.9": "private", "192.168.1.1": "private", "fd00:ec2::254": "private",
		"169.254.169.254": "link-local", "fe80::1": "link-local",
		"100.64.0.1": "shared", "0.0.0.0": "unspecified", "239.1.2.3": "multicast",
		"64:ff9b::a9fe:a9fe": "link-local", "64:ff9b:1::a00:1": "private", "2002:7f00:1::": "loopback",
		"::a9fe:a9fe": "link-local", "fec0::1": "private",
	}
	var none functions.SinkAllowList
	for address, kind := range refused {
		err := none.CheckAddr(netip.MustParseAddr(address))
		require.ErrorIs(t, err, functions.ErrSinkAddress, address)
		require.ErrorContains(t, err, kind, address)
	}
	for _, public := range []string{"8.8.8.8", "93.184.216.34", "2606:4700::1111"} {
		require.NoError(t, none.CheckAddr(netip.MustParseAddr(public)), public)
	}

	require.NoError(t, none.CheckAddr(netip.MustParseAddr("64:ff9b::808:808")), "NAT64 of a public address")
	allow, err := functions.ParseSinkAllowList([]string{"10.0.0.0/8", "::ffff:127.0.0.1"})
	require.NoError(t, err)
	require.NoError(t, allow.CheckAddr(netip.MustParseAddr("10.200.0.5")))
	require.NoError(t, allow.CheckAddr(netip.MustParseAddr("127.0.0.1")))
	require.ErrorIs(t, allow.CheckAddr(netip.MustParseAddr("127.0.0.2")), functions.ErrSinkAddress)
	_, err = functions.ParseSinkAllowList([]string{"ten"})
	require.ErrorContains(t, err, `"ten" is neither`)

	require.ErrorIs(t, none.CheckURI("http://localhost:9000/hook"), functions.ErrSinkAddress)
	require.ErrorIs(t, none.CheckURI("http://[::1]/hook"), functions.ErrSinkAddress)
	require.ErrorIs(t, none.CheckURI("http://169.254.169.254/latest/meta-data"), functions.ErrSinkAddress)
	require.NoError(t, none.CheckURI("https://hooks.example/results"), "a name is checked when delivery connects")
	require.ErrorContains(t, none.CheckURI("ftp://hooks.example/x"), "want an absolute http or https URL")
}
