/** The route table is the contract's: every endpoint, its methods and its group, and nothing made up. */
import { Api } from "@strata/domain"
import { HttpApi } from "effect/http-api"
import { describe, expect, it } from "vitest"
import { groupOf, methodsOf, routeOf } from "../../src/platform/http/RouteTable.ts"

describe("RouteTable", () => {
  it("knows every endpoint of the contract, with its method", () => {
    const endpoints: Array<{ path: string; method: string }> = []
    HttpApi.reflect(Api, {
      onGroup: () => {},
      onEndpoint: ({ endpoint }) => endpoints.push({ path: endpoint.path, method: endpoint.method })
    })
    expect(endpoints.length).toBeGreaterThan(10)
    for (const { method, path } of endpoints) {
      // A concrete path of the endpoint: each `:param` filled in.
      const concrete = path.replace(/:\w+/g, "x1")
      const route = routeOf(`${concrete}?q=1`)
      expect(route, path).toBe(path.replace(/:(\w+)/g, "{$1}"))
      expect(methodsOf(route), path).toContain(method)
    }
  })

  it("names parameterised paths by their template and everything else other", () => {
    expect(routeOf("/data/0190f3a4-0000-7000-8000-000000000000")).toBe("/data/{id}")
    expect(routeOf("/data/batch")).toBe("/data/batch")
    expect(routeOf("/streams/orders/schema/versions/3")).toBe("/streams/{stream}/schema/versions/{version}")
    expect(routeOf("/streams/orders/schema/check")).toBe("/streams/{stream}/schema/check")
    expect(routeOf("/data/a/b")).toBe("other")
    expect(routeOf("/nowhere")).toBe("other")
    expect(routeOf("/metrics")).toBe("/metrics")
  })

  it("answers HEAD where GET is answered, and nothing for unknown routes", () => {
    expect(methodsOf("/data").toSorted()).toEqual(["GET", "HEAD", "POST"])
    expect(methodsOf("/data/batch")).toEqual(["POST"])
    expect(methodsOf("other")).toEqual([])
  })

  it("tells the records routes (the ones admission sheds) from the others", () => {
    expect(groupOf("/data")).toBe("records")
    expect(groupOf("/data/{id}")).toBe("records")
    expect(groupOf("/data/batch")).toBe("records")
    expect(groupOf("/streams")).not.toBe("records")
    expect(groupOf("/metrics")).toBeUndefined()
    expect(groupOf("other")).toBeUndefined()
  })
})
