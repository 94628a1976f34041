package handlers

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/pyexec/pyexec/handlers/templates"
)

type templatesBody struct {
	Templates []templates.Template `json:"templates"`
}

func (h *handler) templates(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, templatesBody{Templates: templates.All()})
}

func (h *handler) template(w http.ResponseWriter, r *http.Request) {
	t, ok := templates.ByID(mux.Vars(r)["id"])
	if !ok {
		writeError(w, r, &apiError{Status: http.StatusNotFound, Code: "not_found", Message: "no such template"})
		return
	}
	writeJSON(w, http.StatusOK, t)
}
