package policy

import (
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/foxproxy/foxproxy/settings"
)

// Each stage condition reads the items written under its own key, and
// names a stage only once.
func TestStageConditionsReadTheirKey(t *testing.T) {
	seen := map[string]bool{}
	for _, sc := range StageConditions {
		if seen[string(sc.Stage)] {
			t.Errorf("stage %s has two conditions", sc.Stage)
		}
		seen[string(sc.Stage)] = true
		word := sc.Words[0]
		var c Condition
		if err := yaml.Unmarshal([]byte(sc.Key+": ["+word+"]"), &c); err != nil {
			t.Fatalf("%s: %v", sc.Key, err)
		}
		if got := sc.Of(&c); !slices.Equal(got, settings.StringList{word}) {
			t.Errorf("%s: Of returned %q, want [%s]", sc.Key, got, word)
		}
		if len(sc.Statuses) == 0 {
			t.Errorf("%s: the stage reports no status", sc.Key)
		}
	}
}
