package activator

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
)

// FuzzCloudEventIngress sends the activator's CloudEvents reader requests
// in binary mode (ce- headers, quoted or percent-encoded as they come) and in
// structured mode. No input makes it panic; every refusal is a 4xx that
// says what is wrong; every event it takes is valid, names a model, and has
// attributes that are UTF-8; its data decodes to a request or a FieldError.
func FuzzCloudEventIngress(f *testing.F) {
	request := `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}`
	f.Add(true, "order-17", "/shop", events.TypeInferenceRequest, "iris", "application/json", []byte(request))
	f.Add(true, `"order 17"`, "%2Fshop", events.TypeInferenceRequest, "%69ris", "application/json", []byte(request))
	f.Add(true, "id", "/s", events.TypeInferenceRequest, `"\"quoted\\"`, "application/json", []byte(request))
	f.Add(true, "id", "/s", events.TypeInferenceRequest, "%FF%FE", "application/json", []byte(request))
	f.Add(true, "", "", "", "", "", []byte{})
	f.Add(false, "", "", "", "", "application/cloudevents+json",
		[]byte(`{"specversion":"1.0","id":"a","source":"/b","type":"`+events.TypeInferenceRequest+`","model":"iris","datacontenttype":"application/json","data":`+request+`}`))
	f.Add(false, "", "", "", "", "application/cloudevents+json", []byte(`{"specversion":"1.0","id":"a","source":"/b","type":"x","model":"iris","data_base64":"////"}`))
	f.Add(false, "", "", "", "", "application/cloudevents+json", []byte(`{"specversion":"1.0","id":"a","source":"/b","type":"x","model":"iris","data":[[[[[[[[[[]]]]]]]]]]}`))
	a := &Activator{cfg: DefaultConfig()}
	a.cfg.MaxBodyBytes = 1 << 16
	f.Fuzz(func(t *testing.T, binary bool, id, source, typ, model, contentType string, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		if binary {
			for name, value := range map[string]string{"ce-specversion": "1.0", "ce-id": id, "ce-source": source, "ce-type": typ, "ce-model": model} {
				r.Header[http.CanonicalHeaderKey(name)] = []string{value}
			}
		}
		ev, err := a.readEvent(httptest.NewRecorder(), r)
		if err != nil {
			code := status(err)
			require.True(t, code >= 400 && code < 500, "refused with %d: %v", code, err)
			require.NotEmpty(t, err.Error())
			return
		}
		require.NoError(t, ev.Validate())
		name, _ := ev.Extensions()[events.ExtensionModel].(string)
		require.NotEmpty(t, name)
		for _, attribute := range []string{ev.ID(), ev.Source(), ev.Type(), name} {
			require.True(t, utf8.ValidString(attribute), "attribute %q is not UTF-8", attribute)
		}
		if _, _, err := events.DecodeRequestData(ev, oip.Limits{MaxElements: 1 << 12, MaxTensors: 8}); err != nil {
			var field *oip.FieldError
			require.True(t, errors.As(err, &field), "data refused without naming a field: %v", err)
		}
	})
}
