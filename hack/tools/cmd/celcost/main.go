// Command celcost prints the cost the API server estimates for CEL rules on
// an object with string fields start, stop and cidr (maxLength 45), the way
// it does when a CRD is created. Rules whose estimate (times the list's
// maxItems) exceeds the budget make the whole CRD invalid, so check a rule
// here before putting it in a marker:
//
//	go -C hack/tools run ./cmd/celcost "isIP(self.start)"
package main

import (
	"fmt"
	"os"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel/model"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/cel/environment"
	"k8s.io/utils/ptr"
)

func main() {
	str := schema.Structural{Generic: schema.Generic{Type: "string"}, ValueValidation: &schema.ValueValidation{MaxLength: ptr.To[int64](45)}}
	for _, rule := range os.Args[1:] {
		s := &schema.Structural{
			Generic:              schema.Generic{Type: "object"},
			Properties:           map[string]schema.Structural{"start": str, "stop": str, "cidr": str},
			ValidationExtensions: schema.ValidationExtensions{XValidations: apiextensionsv1.ValidationRules{{Rule: rule}}},
		}
		res, err := cel.Compile(s, model.SchemaDeclType(s, true), celconfig.PerCallLimit, environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()), cel.NewExpressionsEnvLoader())
		if err != nil {
			fmt.Println("ERR", err)
			continue
		}
		for _, r := range res {
			fmt.Printf("cost=%d err=%v  %.80s\n", r.MaxCost, r.Error, rule)
		}
	}
}
