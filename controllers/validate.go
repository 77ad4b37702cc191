package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"

	"github.com/rocketpilot/rocketpilot/crds"
)

// Validator checks custom resources outside an API server the way the API server does: unknown fields are
// rejected (as kubectl's strict validation does), defaults applied, then the CRD's OpenAPI schema, its list-type
// invariants and its CEL rules are checked, with the API server's own code and cost limits.
type Validator struct {
	kinds map[schema.GroupVersionKind]*kindSchema
}

type kindSchema struct {
	structural *structuralschema.Structural
	schema     validation.SchemaValidator
	cel        *cel.Validator
}

// NewValidator builds validators from rocketpilot's embedded CRDs.
func NewValidator() (*Validator, error) {
	defs, err := crds.CRDs()
	if err != nil {
		return nil, err
	}
	v := &Validator{kinds: map[schema.GroupVersionKind]*kindSchema{}}
	for _, crd := range defs {
		for _, ver := range crd.Spec.Versions {
			if ver.Schema == nil || ver.Schema.OpenAPIV3Schema == nil {
				continue
			}
			var internal apiextensions.JSONSchemaProps
			if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(ver.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
				return nil, fmt.Errorf("%s %s: %w", crd.Name, ver.Name, err)
			}
			structural, err := structuralschema.NewStructural(&internal)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", crd.Name, ver.Name, err)
			}
			sv, _, err := validation.NewSchemaValidator(&internal)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", crd.Name, ver.Name, err)
			}
			gvk := schema.GroupVersionKind{Group: crd.Spec.Group, Version: ver.Name, Kind: crd.Spec.Names.Kind}
			v.kinds[gvk] = &kindSchema{structural: structural, schema: sv,
				cel: cel.NewValidator(structural, true, celconfig.PerCallLimit)}
		}
	}
	return v, nil
}

// Kinds returns the kinds the validator knows.
func (v *Validator) Kinds() []schema.GroupVersionKind {
	out := make([]schema.GroupVersionKind, 0, len(v.kinds))
	for k := range v.kinds {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b schema.GroupVersionKind) int { return strings.Compare(a.Kind, b.Kind) })
	return out
}

// Validate checks one object (a decoded YAML or JSON document) and applies the schema's defaults to it. The
// error lists every problem, as the API server would report them.
func (v *Validator) Validate(ctx context.Context, obj map[string]any) error {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return fmt.Errorf("apiVersion %q: %w", apiVersion, err)
	}
	ks := v.kinds[gv.WithKind(kind)]
	if ks == nil {
		return fmt.Errorf("unknown kind %q in %q (want one of %v)", kind, apiVersion, v.Kinds())
	}
	var errs field.ErrorList
	md, _ := obj["metadata"].(map[string]any)
	name, _ := md["name"].(string)
	if name == "" {
		errs = append(errs, field.Required(field.NewPath("metadata", "name"), "a name is required"))
	} else {
		for _, msg := range utilvalidation.IsDNS1123Subdomain(name) {
			errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), name, msg))
		}
	}
	if ns, _ := md["namespace"].(string); ns != "" {
		for _, msg := range utilvalidation.IsDNS1123Label(ns) {
			errs = append(errs, field.Invalid(field.NewPath("metadata", "namespace"), ns, msg))
		}
	}
	meta := obj["metadata"]
	unknown := pruning.PruneWithOptions(obj, ks.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
	obj["metadata"] = meta // the schema leaves metadata to the API server's own checks, above
	for _, p := range unknown {
		errs = append(errs, field.Invalid(field.NewPath(p), "", "unknown field"))
	}
	defaulting.Default(obj, ks.structural)
	errs = append(errs, validation.ValidateCustomResource(nil, obj, ks.schema)...)
	errs = append(errs, listtype.ValidateListSetsAndMaps(nil, ks.structural, obj)...)
	// The API server skips the CEL rules after a blocking error and says so, and checks them after any other
	// (its customresource strategy's hasBlockingErr): the same here.
	if slices.ContainsFunc(errs, blocksCEL) {
		errs = append(errs, field.Invalid(nil, nil, "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation"))
	} else {
		celErrs, _ := ks.cel.Validate(ctx, nil, ks.structural, obj, nil, celconfig.RuntimeCELCostBudget)
		errs = append(errs, celErrs...)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s %q is invalid: %w", kind, name, errs.ToAggregate())
	}
	return nil
}

// blocksCEL reports whether the API server skips the CEL rules after an error of this type: a type, maxLength,
// maxItems, required or enum violation.
func blocksCEL(err *field.Error) bool {
	switch err.Type {
	case field.ErrorTypeNotSupported, field.ErrorTypeRequired, field.ErrorTypeTooLong, field.ErrorTypeTooMany, field.ErrorTypeTypeInvalid:
		return true
	}
	return false
}
